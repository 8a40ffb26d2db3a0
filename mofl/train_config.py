"""What a training run does and its defaults: the stages, the parameter groups and `TrainConfig`
(paper §4). `mofl.train`'s flags take their defaults from here; `mofl.trainer` runs it.

Schedule (paper §4: "We pre-train the expression model and then train the full network
end-to-end. After convergence, the network is fine-tuned using a larger learning rate for
reflectance." — the paper's word for what mofl calls albedo throughout), by global step:

    stage 0  expression pre-training   steps [0, P)        identity off (α = β = 0): only the
                                                            regressor (Table 3 by default) learns
                                                            pose, expression and light; the
                                                            identity path stays as initialised
    stage 1  end-to-end                steps [P, P + T)     everything
    stage 2  albedo fine-tuning        steps [P + T, end)   Θa, r̄ at albedo_learning_rate

Parameter groups (ours), each with its own Adam whose state starts when the group first trains
(so its bias correction starts at step 1, not at the global step) and its own learning rate:

    trunk           Table 1 conv1–conv3 (lowFeatures)   learning_rate
    frame_head      Table 3                             learning_rate
    identity_path   Table 1 conv4, conv5, Table 2       learning_rate × identity_path_lr_multiplier
    shape_basis     Θs                                  learning_rate × shape_basis_lr_multiplier
    albedo          Θa, r̄                               learning_rate × albedo_lr_multiplier
                                                        (stage 2: albedo_learning_rate)

Why stage 0 leaves the identity path alone: the face model gets α = β = 0 there, so the only
gradient conv4/conv5/Table 2 would get is "be a useful extra input to Table 3"; under it the path
shrank and died before identity learning began (docs/training.md "Stage 0 and the identity path").
The modes of `pretrain_identity_path`: 'freeze' (its variables are not updated, but Table 3's
gradient still flows through it into the shared lowFeatures rows) and 'stop_gradient' (Table 3 reads
α, β through tf.stop_gradient, so that path is cut too). Either way the trunk (conv1–conv3) learns,
so α itself still changes; 'freeze_trunk' (the default, chosen by the probe in docs/experiments.md
"Old vs new code, and the stage-0 modes (fourth session)") trains Table 3 alone in stage 0, which
leaves α, β (and everything upstream of them) exactly as initialised. 'train' is the old behaviour.
"""
import dataclasses
from typing import Optional

import numpy as np

from mofl import losses
from mofl import optim

STAGE_NAMES = ('expression_pretraining', 'end_to_end', 'albedo_finetuning')
PARAMETER_GROUPS = ('trunk', 'frame_head', 'identity_path', 'shape_basis', 'albedo')
PRETRAIN_IDENTITY_PATH = ('freeze', 'stop_gradient', 'freeze_trunk', 'train')
LOSS_TERMS = ('photometric', 'landmark', 'smoothness', 'sparsity', 'expression', 'identity_mean',
              'dense_points', 'depth_spread')


@dataclasses.dataclass
class TrainConfig:
    """Everything the training loop needs besides the model config (flags fill it)."""
    data: str = ''
    output_dir: str = ''
    batch_size: int = 2
    num_frames: int = 4
    pretrain_steps: int = 0
    train_steps: int = 100
    finetune_steps: int = 0
    learning_rate: float = 1e-4
    albedo_learning_rate: float = 1e-3
    identity_path_lr_multiplier: float = 1.0
    shape_basis_lr_multiplier: float = 1.0
    albedo_lr_multiplier: float = 1.0
    lr_decay_fraction: float = 0.0
    lr_decay_floor: float = 0.1
    gradient_clip_norm: float = 0.0
    weight_average_decay: float = 0.0    # ours: 0 = off (the paper); see optim.WeightAverage
    stop_identity_gradient: bool = False
    pretrain_identity_path: str = 'freeze_trunk'    # one of PRETRAIN_IDENTITY_PATH
    identity_output_init: bool = False
    identity_init_samples: int = 16
    lambda_photometric: Optional[float] = None    # None: 1.6 / |V̄| (supplement §2)
    lambda_landmark: float = losses.PAPER_LANDMARK_WEIGHT
    lambda_smoothness: float = losses.PAPER_SMOOTHNESS_WEIGHT
    lambda_sparsity: float = losses.PAPER_SPARSITY_WEIGHT
    lambda_expression: float = losses.PAPER_EXPRESSION_WEIGHT
    lambda_identity_mean: float = 0.0    # ours (losses.identity_mean_loss); 0 in the paper
    lambda_dense_points: float = 0.0     # ours (docs/data.md "Dense 2D points"); 0 in the paper
    lambda_depth_spread: float = 0.0     # ours (losses.depth_spread_loss); 0 in the paper
    chroma_eta: float = losses.PAPER_CHROMA_ETA
    sparsity_exponent: float = losses.PAPER_SPARSITY_EXPONENT
    strategy: str = 'default'        # default | mirrored | multi_worker
    num_cpu_devices: int = 0         # >1: split the CPU into logical devices (testing)
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    checkpoint_iterator: bool = True
    log_every: int = 10
    summary_every: int = 10
    image_summary_every: int = 200
    seed: int = 0
    shuffle_buffer: int = 256
    identity_eval_data: str = ''     # held-out synthetic records: identity summaries
    identity_eval_every: int = 250
    identity_eval_samples: int = 32

    @property
    def total_steps(self):
        return self.pretrain_steps + self.train_steps + self.finetune_steps

    def stage_of(self, step):
        if step < self.pretrain_steps:
            return 0
        if step < self.pretrain_steps + self.train_steps:
            return 1
        return 2

    def stage_bounds(self, stage):
        """[start, end) global steps of `stage`."""
        ends = np.cumsum([self.pretrain_steps, self.train_steps, self.finetune_steps])
        return (0 if stage == 0 else int(ends[stage - 1])), int(ends[stage])

    def trained_groups(self, stage):
        """Names of the parameter groups `stage` updates."""
        if stage == 0:
            return {'freeze': ('trunk', 'frame_head'),
                    'stop_gradient': ('trunk', 'frame_head'),
                    'freeze_trunk': ('frame_head',),
                    'train': ('trunk', 'frame_head', 'identity_path')}[self.pretrain_identity_path]
        return PARAMETER_GROUPS

    def stops_identity_gradient(self, stage):
        """Whether Table 3 reads α, β through tf.stop_gradient in `stage`."""
        if stage == 0:
            return self.pretrain_identity_path == 'stop_gradient'
        return self.stop_identity_gradient

    def group_learning_rate(self, group, step):
        """Learning rate of parameter `group` at global `step` (schedule included)."""
        stage = self.stage_of(step)
        base = {
            'trunk': self.learning_rate,
            'frame_head': self.learning_rate,
            'identity_path': self.learning_rate * self.identity_path_lr_multiplier,
            'shape_basis': self.learning_rate * self.shape_basis_lr_multiplier,
            'albedo': (self.albedo_learning_rate if stage == 2
                       else self.learning_rate * self.albedo_lr_multiplier),
        }[group]
        start, end = self.stage_bounds(stage)
        return base * optim.stage_decay_factor(step, start, end, self.lr_decay_fraction,
                                               self.lr_decay_floor)
