"""XLM-K entity plug-in (Jiang et al., 2022): an outside plug-in over a frozen multilingual encoder.

XLM-K continues pre-training all of XLM-R with two knowledge tasks (masked entity prediction and
object entailment, see :mod:`kadapt.plugins.xlmk.objective`). Here the backbone stays frozen and the
knowledge goes into K-Adapter-style adapter layers read from the backbone's hidden states (the layer
body is :class:`kadapt.plugins.kadapter.plugin.KAdapterLayer`). The paper's "all the Transformers are with
shared parameters" holds: one plug-in encodes mention sentences, entity descriptions, subjects and
objects alike. The projection heads W1..W8 and the relation lookup table belong to the objective
(``objective_heads.safetensors``), the candidate queues to its memory (``memory.safetensors``); the
plug-in file holds the encoder only, so downstream tasks load it like any other plug-in.

Size: the default (three adapter layers of width 768, N=2) on XLM-R-base (H=768) is
3 × 15,356,928 = 46,070,784 parameters; on XLM-R-large (H=1024) 47,251,200, as K-Adapter's.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from kadapt.plugins.kadapter.plugin import KAdapter, KAdapterConfig


@dataclass
class XLMKConfig(KAdapterConfig):
    """XLM-K plug-in sizes: the adapter body of K-Adapter (all sizes configurable)."""

    name: str = field(default="xlmk", metadata={"help": "Plug-in name, e.g. 'xlmk-wikidata'."})


class XLMKPlugin(KAdapter):
    """Adapter layers over the frozen multilingual encoder; its states feed XLM-K's projection heads."""

    kind = "xlmk"
    placement = "outside"
    config_class = XLMKConfig

    def card_notes(self) -> list[str]:
        return [
            f"adapter layers read backbone hidden states {list(self.layer_ids)} (0 = embeddings)",
            ("XLM-K (Jiang et al., 2022) knowledge tasks: masked entity prediction + object entailment, "
             "InfoNCE against in-batch candidates and a FIFO candidate queue (memory.safetensors)"),
            "one plug-in encodes sentences and descriptions (shared parameters, as in the paper)",
        ]
