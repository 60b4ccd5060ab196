"""The tiny task of the reinforcement-learning tests (grpo.sh, ppo.sh): 'add a and b' for a, b in
0..4. Writes docs.jsonl (pretraining text), chat.jsonl (llm-sft rows), prompts.jsonl (200 prompt
rows with their "answer") and prefs.jsonl (pairs preferring the answer "4", for a reward model)."""
import json, random

rng = random.Random(1)
words = ["the", "cat", "dog", "sat", "on", "mat", "a", "big", "small", "red"]
with open("docs.jsonl", "w") as f:
    for i in range(300):
        f.write(json.dumps({"text": " ".join(rng.choice(words) for _ in range(rng.randint(20, 40)))}) + "\n")
        a, b = rng.randint(0, 4), rng.randint(0, 4)
        f.write(json.dumps({"text": f"add {a} and {b} {a + b}"}) + "\n")
with open("chat.jsonl", "w") as f:
    for i in range(400):
        a, b = rng.randint(0, 4), rng.randint(0, 4)
        f.write(json.dumps({"messages": [{"role": "user", "content": f"add {a} and {b}"}, {"role": "assistant", "content": str(a + b)}]}) + "\n")
with open("prompts.jsonl", "w") as f:
    for i in range(200):
        a, b = rng.randint(0, 4), rng.randint(0, 4)
        f.write(json.dumps({"prompt": [{"role": "user", "content": f"add {a} and {b}"}], "answer": str(a + b)}) + "\n")
rng = random.Random(3)
with open("prefs.jsonl", "w") as f:
    for i in range(200):
        a, b = rng.randint(0, 4), rng.randint(0, 4)
        f.write(json.dumps({"prompt": [{"role": "user", "content": f"add {a} and {b}"}],
                            "chosen": [{"role": "assistant", "content": "4"}],
                            "rejected": [{"role": "assistant", "content": str(rng.choice([0, 1, 2, 3, 5, 6, 7, 8]))}]}) + "\n")
