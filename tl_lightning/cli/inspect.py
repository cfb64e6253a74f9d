"""Mask inspector: render N samples of a config's training data and print every token with its label mask, MAE
status and PKT weight, plus totals. Exits 1 (after printing) if a sample has no trained token or an assistant
turn's stop token is not trained.

    python -m tl_lightning.cli.inspect --config configs/quickstart.yaml [-n 2] [--split train] [--all-tokens]
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter

from tl_lightning.core.constants import IGNORE_INDEX
from tl_lightning.data.tokenization import tokenize_rendered


def token_rows(dm, conv) -> tuple[list[tuple], list[str]]:
    """(rows, problems) for one conversation: rows are (index, piece, trained, weight, key, segment, mae)."""
    counts: Counter = Counter()
    enc, rendered, blocked = dm.encode_conversation(conv, counts)
    if enc is None:
        return [], [f"{conv.id}: dropped by MAE mode {dm.mae.mode}"]
    tok = dm.tok
    offsets = tokenize_rendered(rendered, tok, offsets=True)["offset_mapping"][: len(enc.input_ids)]
    pieces = tok.convert_ids_to_tokens(enc.input_ids)
    rows, problems = [], []
    for i, (a, b) in enumerate(offsets):
        seg = next((s for s in rendered.segments if s.start <= a < s.end), None)
        role = seg.role if seg else "special"
        mae = "blocked" if seg is not None and seg.trainable and seg.message_index in blocked else ""
        rows.append((i, pieces[i], enc.labels[i] != IGNORE_INDEX, enc.weights[i], enc.key_mask[i], role, mae))
    if enc.n_trainable == 0:
        problems.append(f"{conv.id}: no trained token (truncated by max_length={dm.hparams.max_length}?)")
    for seg in rendered.segments:
        if seg.trainable and seg.message_index not in blocked:
            idx = [i for i, (a, b) in enumerate(offsets) if seg.start <= a and b <= seg.end and b > a]
            if idx and not (enc.input_ids[idx[-1]] == tok.eos_token_id and enc.labels[idx[-1]] != IGNORE_INDEX):
                problems.append(f"{conv.id}: stop token of message {seg.message_index} is not trained")
    return rows, problems


def print_table(conv_id: str, rows: list[tuple], all_tokens: bool) -> None:
    print(f"\n=== {conv_id}: {len(rows)} tokens ===")
    print(f"{'idx':>5}  {'token':<24} {'train':<5} {'weight':>6} {'key':<3} {'segment':<9} mae")
    for i, piece, trained, w, key, role, mae in rows:
        if all_tokens or trained or mae:
            flag = "yes" if trained else "-"
            print(f"{i:>5}  {piece!r:<24} {flag:<5} {w:>6.2f} {'K' if key else '':<3} {role:<9} {mae}")
    n_tr = sum(r[2] for r in rows)
    n_key = sum(r[4] for r in rows)
    n_bl = sum(1 for r in rows if r[6])
    print(f"totals: tokens {len(rows)}, trained {n_tr}, key {n_key}, MAE-blocked {n_bl}, "
          f"weight sum {sum(r[3] for r in rows):.2f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Show labels, MAE blocks and PKT weights token by token.")
    ap.add_argument("--config", action="append", required=True, help="stage config(s), as for main.py")
    ap.add_argument("-n", type=int, default=2, help="number of samples")
    ap.add_argument("--split", choices=["train", "val"], default="train")
    ap.add_argument("--all-tokens", action="store_true", help="also print context tokens")
    a = ap.parse_args(argv)
    import warnings

    from tl_lightning.cli.app import TLCLI

    warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within Python.*")
    args = [x for c in a.config for x in ("--config", c)]
    cli = TLCLI(args=args, run=False, save_config_callback=None)
    cli.model.prepare_data()  # builds the checkpoint on first use, as `fit` would
    dm = cli.datamodule
    dm.load_tokenizer()
    source = dm.train_source if a.split == "train" else dm.val_source
    convs, _ = source.load(dm.hparams.cache_dir)
    problems: list[str] = []
    for conv in convs[: a.n]:
        rows, probs = token_rows(dm, conv)
        print_table(conv.id, rows, a.all_tokens)
        problems += probs
    for p in problems:
        print(f"PROBLEM: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    from tl_lightning.cli.runtime import quiet_third_party_logs, run_with_user_errors

    quiet_third_party_logs()
    code = 0

    def _run() -> None:
        global code
        code = main()

    rc = run_with_user_errors(_run)
    sys.exit(rc or code)
