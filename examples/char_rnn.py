"""char-rnn: a symcell cell and a linear head learn to continue Shakespeare's sonnets, one character at a time.

    python examples/char_rnn.py                               # LSTM, 300 steps, then a 400-character sample
    python examples/char_rnn.py --cell gru --steps 100 --sample 200 --temperature 0.8
    python examples/char_rnn.py --embed 32                    # an embedding instead of one-hot input
    python examples/char_rnn.py --load char_rnn.pt --steps 0  # sample from a saved checkpoint

The text (examples/data/sonnets.txt: five sonnets, 3 KB, public domain) is cut into random windows of --seq
characters; each step trains on --batch of them with Adam. The loss falls visibly within a few hundred steps.
"""
import argparse
import math
import os

import torch
from torch import nn

from symcell.cells import GRU, LLTM, LSTM, PeepholeLSTM

try:
    from tqdm import tqdm
except ImportError:   # the progress bar is a nicety; the example runs without it
    tqdm = None

CELLS = {"lstm": LSTM, "gru": GRU, "lltm": LLTM, "peephole": PeepholeLSTM}


class CharRNN(nn.Module):
    def __init__(self, vocab, cell, hidden, embed):
        super().__init__()
        self.vocab, self.embed_dim = vocab, embed
        self.embed = nn.Embedding(vocab, embed) if embed else None
        self.cell = CELLS[cell](embed or vocab, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def encode(self, ids):
        return self.embed(ids) if self.embed is not None else nn.functional.one_hot(ids, self.vocab).float()

    def forward(self, ids, state=None):
        """ids (B, T) -> logits (B, T, vocab), state"""
        out, state = self.cell(self.encode(ids), state)   # state: whatever the cell returned last time
        return self.head(out), state


def sample(model, stoi, itos, n, temperature, prime="Shall I"):
    model.eval()
    ids = torch.tensor([[stoi[c] for c in prime]])
    text, state = prime, None
    with torch.no_grad():
        logits, state = model(ids, state)
        for _ in range(n):
            probs = torch.softmax(logits[0, -1] / temperature, dim=-1)
            nxt = torch.multinomial(probs, 1)
            text += itos[nxt.item()]
            logits, state = model(nxt.view(1, 1), state)
    model.train()
    return text


def positive(kind):
    """an argparse type: a number of `kind` > 0 (argparse's message otherwise, not a traceback from training)"""
    def parse(text):
        try:
            v = kind(text)
        except ValueError:
            v = None
        if v is None or not v > 0:
            raise argparse.ArgumentTypeError(f"must be a positive {kind.__name__}, got {text!r}")
        return v
    return parse


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cell", choices=sorted(CELLS), default="lstm")
    ap.add_argument("--hidden", type=positive(int), default=128)
    ap.add_argument("--embed", type=int, default=0, help="embedding size (0: one-hot input)")
    ap.add_argument("--seq", type=positive(int), default=64)
    ap.add_argument("--batch", type=positive(int), default=32)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--sample", type=int, default=400)
    ap.add_argument("--temperature", type=positive(float), default=0.7)
    ap.add_argument("--save", default="char_rnn.pt", help="checkpoint written after training")
    ap.add_argument("--load", default=None, help="checkpoint to start from")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)

    text = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "sonnets.txt")).read()
    chars = sorted(set(text))
    stoi, itos = {c: i for i, c in enumerate(chars)}, dict(enumerate(chars))
    data = torch.tensor([stoi[c] for c in text])
    ck = torch.load(args.load) if args.load else None
    if ck is not None:   # the checkpoint's model: its cell and sizes, whatever the command line says
        shape = ck.get("shape", (args.cell, args.hidden, args.embed))
        if shape != (args.cell, args.hidden, args.embed):
            print(f"{args.load} holds a {shape[0]} of hidden size {shape[1]}, embed {shape[2]}: using it (the "
                  "--cell, --hidden and --embed given do not apply)")
        args.cell, args.hidden, args.embed = shape
    model = CharRNN(len(chars), args.cell, args.hidden, args.embed)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    if ck is not None:
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        print(f"loaded {args.load} (trained {ck['steps']} steps)")

    print(f"{len(text)} characters, {len(chars)} symbols; {args.cell} with {args.hidden} units; "
          f"loss at start ~ ln({len(chars)}) = {math.log(len(chars)):.2f}")
    steps = range(args.steps)
    bar = tqdm(steps, desc="training", unit="step") if tqdm is not None and args.steps else steps
    first = last = None
    for step in bar:
        starts = torch.randint(0, len(data) - args.seq - 1, (args.batch,))
        batch = torch.stack([data[s:s + args.seq + 1] for s in starts])
        logits, _ = model(batch[:, :-1])
        loss = nn.functional.cross_entropy(logits.reshape(-1, len(chars)), batch[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        first = loss.item() if first is None else first
        last = loss.item()
        if tqdm is not None:
            bar.set_postfix(loss=f"{last:.3f}")
        elif step % 50 == 0:
            print(f"step {step}: loss {last:.3f}")
    if args.steps:
        print(f"loss {first:.3f} -> {last:.3f} after {args.steps} steps")
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "steps": args.steps,
                    "shape": (args.cell, args.hidden, args.embed)}, args.save)
        print(f"saved {args.save}")
    if args.sample:
        print("-" * 60)
        print(sample(model, stoi, itos, args.sample, args.temperature))


if __name__ == "__main__":
    main()
