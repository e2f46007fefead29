"""The U-Mamba trainer classes, for nnU-Net's external-trainer search (nnUNet_extTrainer, nnunetv2 >= 2.8).

The classes are the ones in `umamba.nnunet.trainers` (re-exported, not copies), so checkpoints and
`isinstance` checks agree whichever way they were found.
"""

from umamba.nnunet.trainers import (  # noqa: F401
    nnUNetTrainerUMambaBot,
    nnUNetTrainerUMambaBotNoAMP,
    nnUNetTrainerUMambaEnc,
    nnUNetTrainerUMambaEncNoAMP,
)
