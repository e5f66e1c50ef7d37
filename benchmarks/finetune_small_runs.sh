#!/usr/bin/env bash
# The small CPU fine-tune runs of benchmarks/README.md ("Downstream fine-tuning, small CPU runs"),
# one after the other. Needs the MiniLM plug-ins in runs/plugins/{factual,linguistic} (e.g. copied
# from the plugin/ folders that benchmarks/real_data_infusion.py writes).
set -u
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
mkdir -p runs/logs
run() { local name=$1; shift; nice -n 10 python -m kadapt finetune "$@" > "runs/logs/$name.log" 2>&1; echo "$name rc=$?"; }
run pos-bare recipes/finetune/ud_pos_small.yaml --out runs/small/pos-bare
run pos-L recipes/finetune/ud_pos_small.yaml --out runs/small/pos-L --plugins runs/plugins/linguistic
run lama-bare recipes/finetune/lama_probe_small.yaml --out runs/small/lama-bare
run lama-F recipes/finetune/lama_probe_small.yaml --out runs/small/lama-F --plugins runs/plugins/factual
run pos-F recipes/finetune/ud_pos_small.yaml --out runs/small/pos-F --plugins runs/plugins/factual
