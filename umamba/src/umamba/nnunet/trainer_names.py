"""Names of the U-Mamba trainers and their short aliases (importable without torch or nnunetv2)."""

TRAINER_NAMES = ("nnUNetTrainerUMambaBot", "nnUNetTrainerUMambaEnc",
                 "nnUNetTrainerUMambaBotNoAMP", "nnUNetTrainerUMambaEncNoAMP")
TRAINER_ALIASES = {"bot": "nnUNetTrainerUMambaBot", "enc": "nnUNetTrainerUMambaEnc",
                   "bot-noamp": "nnUNetTrainerUMambaBotNoAMP", "enc-noamp": "nnUNetTrainerUMambaEncNoAMP"}


def model_folder_name(trainer_name: str, plans_name: str, configuration: str) -> str:
    """nnU-Net's results sub-folder for one trainer / plans / configuration."""
    return f"{trainer_name}__{plans_name}__{configuration}"
