"""Knowledge graphs: the graph type, readers for KG releases, a CSR neighbour sampler, DGL interop."""
from kadapt.kg.graph import CSR, KnowledgeGraph
from kadapt.kg.readers import KG_READERS, read_kg
from kadapt.kg.sampler import NeighborSampler, SampledSubgraph

__all__ = ["CSR", "KG_READERS", "KnowledgeGraph", "NeighborSampler", "SampledSubgraph", "read_kg"]

from kadapt.core.family import register_format  # noqa: E402
from kadapt.kg.readers import read_kg_triples  # noqa: E402

register_format("kg", read_kg_triples, owner="kadapt.kg")  # a KG folder's triples as records
