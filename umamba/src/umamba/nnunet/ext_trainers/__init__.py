"""A folder for nnU-Net 2.8's `nnUNet_extTrainer` variable (see README, "Using stock nnUNetv2_train").

Point nnUNet_extTrainer at this folder (`umamba train --print-ext-trainer-path` prints it) and stock
`nnUNetv2_train ... -tr nnUNetTrainerUMambaBot` / `nnUNetv2_predict` find the U-Mamba trainers in
`umamba_trainers.py`. nnU-Net imports that module as a top-level module from this folder.
"""
