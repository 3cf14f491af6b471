"""Block-wise supernet training and rating (DNA, BossNAS).

The encoder is cut into blocks of consecutive layers ([`BlockSplit`]); a subnet inside one block is a
[`BlockCandidate`]. [`BlockwiseTrainer`] trains every block on its own: supervised against a teacher's hidden states
(`blockwise_mode="supervised"`, DNA-style) or self-supervised by ensemble bootstrapping with an EMA target network
(`blockwise_mode="ensemble"`, BossNAS); [`recouple`] then runs a short end-to-end sandwich phase with the existing
`SupernetTrainer`. A subnet's block-wise rating, the sum of its blocks' losses, is offered to the search as the
objective `"blockwise_loss"` ([`BlockwiseRatingObjective`], registered on import) and as predictor features
([`rating_features`]).

```python
>>> from hf_nas.blockwise import BlockSplit
>>> BlockSplit.even(12).block_sizes  # 12 layers -> 4 blocks of 3
(3, 3, 3, 3)
```
"""

from .blocks import (
    MODEL_INPUT_NAMES,
    BlockCandidate,
    BlockSplit,
    default_num_blocks,
    layer_call_arguments,
    model_inputs,
    run_block,
)
from .ensemble import (
    BlockProjector,
    EMATarget,
    EnsembleHeads,
    byol_loss,
    cosine_momentum,
    ensemble_target,
    image_views,
    mask_tokens,
    masked_mean_pool,
)
from .rating import (
    BlockwiseRater,
    BlockwiseRatingObjective,
    EnsembleBlockRater,
    SupervisedBlockRater,
    build_batches,
    rating_features,
)
from .trainer import (
    BLOCKWISE_MODES,
    BLOCKWISE_RECORD_NAME,
    BlockwiseModel,
    BlockwiseOutput,
    BlockwiseTrainer,
    BlockwiseTrainingArguments,
    block_candidates,
    full_hidden_states,
    load_blocks,
    recouple,
    supervised_block_loss,
    teacher_boundaries,
)

__all__ = [
    "BLOCKWISE_MODES",
    "BLOCKWISE_RECORD_NAME",
    "MODEL_INPUT_NAMES",
    "BlockCandidate",
    "BlockProjector",
    "BlockSplit",
    "BlockwiseModel",
    "BlockwiseOutput",
    "BlockwiseRater",
    "BlockwiseRatingObjective",
    "BlockwiseTrainer",
    "BlockwiseTrainingArguments",
    "EMATarget",
    "EnsembleBlockRater",
    "EnsembleHeads",
    "SupervisedBlockRater",
    "block_candidates",
    "build_batches",
    "byol_loss",
    "cosine_momentum",
    "default_num_blocks",
    "ensemble_target",
    "full_hidden_states",
    "image_views",
    "layer_call_arguments",
    "load_blocks",
    "mask_tokens",
    "masked_mean_pool",
    "model_inputs",
    "rating_features",
    "recouple",
    "run_block",
    "supervised_block_loss",
    "teacher_boundaries",
]
