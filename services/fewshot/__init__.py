"""Few-shot local models: an annotator and a different critic fit on a tiny seed.

They give useful labels and error probabilities on a CPU with no network, as
backends of the annotator and criticizer services (see :mod:`.pair`), and are
candidates for ``act select-models``. Imports are light: the MiniLM encoder
(torch) loads only when a text model first embeds something.
"""

from services.fewshot.model import FEWSHOT_SPECS, FewShotModel, FewShotSpec, build_fewshot_model
from services.fewshot.pair import (
    DEFAULT_MODELS,
    DEFAULT_PER_CLASS,
    PROVIDER,
    FewShotAnnotator,
    FewShotCritic,
    FewShotPair,
    annotator_from_ref,
    build_pair,
    critic_from_ref,
    pair_for_dataset,
)
from services.fewshot.pools import LabelledPool, builtin_pool, text_pool_from_jsonl
from services.fewshot.seed import SeedSelection, select_seed

__all__ = [
    "DEFAULT_MODELS",
    "DEFAULT_PER_CLASS",
    "FEWSHOT_SPECS",
    "PROVIDER",
    "FewShotAnnotator",
    "FewShotCritic",
    "FewShotModel",
    "FewShotPair",
    "FewShotSpec",
    "LabelledPool",
    "SeedSelection",
    "annotator_from_ref",
    "build_fewshot_model",
    "build_pair",
    "builtin_pool",
    "critic_from_ref",
    "pair_for_dataset",
    "select_seed",
    "text_pool_from_jsonl",
]
