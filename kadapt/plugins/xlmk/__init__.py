"""XLM-K (Jiang et al., 2022): a contrastive entity adapter over a frozen multilingual encoder."""
from kadapt.plugins.xlmk import objective  # noqa: F401  (registers "xlmk_contrastive")
from kadapt.plugins.xlmk.plugin import XLMKConfig, XLMKPlugin

__all__ = ["XLMKConfig", "XLMKPlugin"]
