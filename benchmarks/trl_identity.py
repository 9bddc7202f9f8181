"""The identity run of bench_dpo.py done with TRL, as a student would write it: load, train, save.

    python benchmarks/trl_identity.py MODEL_DIR DATA.jsonl OUTPUT_DIR STEPS
"""

import sys

from datasets import load_dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import DPOConfig, DPOTrainer

model_path, data_path, output, steps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
model = AutoModelForCausalLM.from_pretrained(model_path)
tokenizer = AutoTokenizer.from_pretrained(model_path)
config = DPOConfig(output_dir=output, beta=0.1, learning_rate=1e-4, per_device_train_batch_size=8, max_steps=steps,
                   max_length=512, use_cpu=True, report_to=[], save_strategy="no", logging_steps=10, seed=0)
trainer = DPOTrainer(model=model, args=config, train_dataset=load_dataset("json", data_files=data_path, split="train"),
                     processing_class=tokenizer)
trainer.train()
trainer.save_model(output)
