"""PyTorch's training throughput on the shapes `patchrec bench-train` uses: the same
checkpoint (LlamaForCausalLM, float32), sequences of SEQ_LEN random token ids, MICRO_BATCH
of them per step, cross-entropy at the last ANSWER positions of each, gradient clipping at
0.3 and AdamW at 1e-4; full fine-tuning, or LoRA through peft with the same rank, alpha
(2 x rank) and targets (every projection). One untimed step first, then STEPS timed ones.
Prints one JSON line like `patchrec bench-train --out` writes.

Run by bench/train-speed.sh with the peers' venv (bench/setup-peers.sh, plus peft)."""

import argparse
import json
import os
import sys
import time
import warnings


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--micro-batch", type=int, default=1)
    p.add_argument("--answer", type=int, default=16)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--lora-rank", type=int, default=0)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    args = p.parse_args()

    import torch
    import transformers

    warnings.filterwarnings("ignore")
    transformers.logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    torch.manual_seed(42)
    model = transformers.LlamaForCausalLM.from_pretrained(args.checkpoint, torch_dtype=torch.float32)
    mode = "full"
    if args.lora_rank:
        import peft

        config = peft.LoraConfig(
            r=args.lora_rank,
            lora_alpha=2 * args.lora_rank,
            lora_dropout=0.0,
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        )
        model = peft.get_peft_model(model, config)
        mode = f"lora-r{args.lora_rank}"
    model.train()
    params = [q for q in model.parameters() if q.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    vocab = model.config.vocab_size
    answer = min(args.answer, args.seq_len - 1)
    times = []
    for step in range(args.steps + 1):
        ids = torch.randint(0, vocab, (args.micro_batch, args.seq_len))
        targets = torch.randint(0, vocab, (args.micro_batch * answer,))
        started = time.perf_counter()
        hidden = model.get_decoder()(input_ids=ids).last_hidden_state if not args.lora_rank else \
            model.base_model.model.model(input_ids=ids).last_hidden_state
        picked = hidden[:, args.seq_len - 1 - answer: args.seq_len - 1, :].reshape(-1, hidden.shape[-1])
        head = model.get_output_embeddings() if not args.lora_rank else model.base_model.model.lm_head
        logits = head(picked)
        loss = torch.nn.functional.cross_entropy(logits, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 0.3)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step > 0:
            times.append(time.perf_counter() - started)
    report = {
        "mode": mode,
        "threads": args.threads,
        "seq_len": args.seq_len,
        "micro_batch": args.micro_batch,
        "answer": answer,
        "trained_parameters": sum(q.numel() for q in params),
        "step_seconds": times,
        "positions_per_second": args.steps * args.micro_batch * args.seq_len / sum(times),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
