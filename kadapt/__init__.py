"""kadapt: knowledge plug-ins for frozen pretrained encoders."""
from kadapt.core.version import __version__

import os as _os

# Before torch loads OpenMP: idle OpenMP threads sleep instead of spin-waiting, which on a machine
# shared by several processes avoids ~100x slow-downs of small matmuls (a user's setting wins).
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from kadapt.core.backbone import BackboneSpec, Fingerprint, FrozenBackbone  # noqa: E402
from kadapt.core.family import Family, build_plugin, register_family, register_plugin  # noqa: E402
from kadapt.core.model import KnowledgeModel  # noqa: E402
from kadapt.core.objective import Objective, ObjectiveOutput  # noqa: E402
from kadapt.core.plugin import Pass, Plugin, PluginConfig, StepInfo  # noqa: E402
import kadapt.data.formats  # noqa: E402,F401  (registers the shared data formats)
import kadapt.kg  # noqa: E402,F401  (registers the 'kg' format)
import kadapt.tasks  # noqa: E402,F401  (registers the family-agnostic heads)
import kadapt.plugins  # noqa: E402,F401  (registers every built-in family)
from kadapt.store.plugin_dir import LoadedPlugin, describe_plugin, load_plugin, save_plugin  # noqa: E402
from kadapt.data.encoding import PaddingCollator  # noqa: E402
import kadapt.runs.pretrained  # noqa: E402,F401  (registers the HF verbs: from_pretrained, save_pretrained, ...)

__all__ = [
    "BackboneSpec", "Fingerprint", "FrozenBackbone", "Plugin", "PluginConfig", "build_plugin",
    "register_plugin", "LoadedPlugin", "describe_plugin", "load_plugin", "save_plugin", "__version__",
    # the contracts (a new family needs nothing else): model, pass, step info, objective, family registry
    "KnowledgeModel", "Pass", "StepInfo", "Objective", "ObjectiveOutput", "Family", "register_family",
    # the data collator of kadapt's loop, for transformers.Trainer / DataLoader
    "PaddingCollator",
]
