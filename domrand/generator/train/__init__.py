"""Training: the StyleGAN2 trainer (``stylegan``) and its fine-tuning (``finetune``), the inverter
trainer, the aligned-pair trainer, distillation of the student, their losses, ADA, datasets,
run folders (``runs``) and the shared outer loop (``loop``). No argparse: the commands call these."""
