#!/usr/bin/env bash
# The main job on the embedded default (SQLite + local files, no servers), end to end.
# Run it with `make demo`; it works in a throw-away folder and leaves nothing behind.
set -euo pipefail
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export MODELWARD_HOME="$work/home"
export MODELWARD_ACTOR="demo-admin"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "a small model bundle"
mkdir -p "$work/tiny-model"
python3 - "$work/tiny-model" <<'PY'
import json, struct, sys, pathlib
root = pathlib.Path(sys.argv[1])
header = json.dumps({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}).encode()
(root / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + struct.pack("<4f", 1, 2, 3, 4))
(root / "config.json").write_text(json.dumps({"architectures": ["TinyModel"], "hidden_size": 2}))
(root / "tokenizer.json").write_text(json.dumps({"model": {"vocab": {"a": 0, "b": 1}}}))
PY
ls -l "$work/tiny-model"

step "keys → sign → verify"
modelward keys generate --out "$work/signing-key"
modelward sign "$work/tiny-model" --key "$work/signing-key"
modelward verify "$work/tiny-model" --public-key "$work/signing-key.pub"

step "tamper with one file → verify fails (exit 1) and names it"
printf 'x' >> "$work/tiny-model/config.json"
if modelward verify "$work/tiny-model" --public-key "$work/signing-key.pub"; then
  echo "tampering was NOT detected" >&2; exit 1
else
  echo "(exit $? as expected)"
fi
printf '{"architectures": ["TinyModel"], "hidden_size": 2}' > "$work/tiny-model/config.json"

step "a registry on the embedded default: SQLite + local blob store in \$MODELWARD_HOME"
modelward init
# the gate counts only signatures by keys an admin trusts (never the registry's own)
modelward keys trust "$work/signing-key.pub" --name demo-uploader
modelward sign "$work/tiny-model" --key "$work/signing-key"
modelward push "$work/tiny-model" --model tiny --description "first cut" \
  --signature "$work/tiny-model.sig" --public-key "$work/signing-key.pub"
printf '{"architectures": ["TinyModel"], "hidden_size": 4}' > "$work/tiny-model/config.json"
modelward sign "$work/tiny-model" --key "$work/signing-key"
modelward push "$work/tiny-model" --model tiny --description "wider" \
  --signature "$work/tiny-model.sig" --public-key "$work/signing-key.pub"
modelward alias set tiny champion 1
modelward versions list tiny
modelward show models:/tiny@champion

step "pull verifies every byte and the registry signature"
modelward pull models:/tiny@champion --out "$work/pulled"
ls "$work/pulled"

step "the ledger: every change is an event in a signed Merkle log"
modelward audit log
modelward audit checkpoint --out "$work/checkpoint.txt"
modelward audit proof 1 --out "$work/proof.txt"
cat "$work/proof.txt"
modelward audit verify --since "$work/checkpoint.txt"

step "scanning: an allow-list engine refuses a pickle that would run a command on load"
mkdir -p "$work/evil-model"
python3 - "$work/evil-model" <<'PY'
import pathlib, sys
# built opcode by opcode, never executed: GLOBAL os.system, a string, REDUCE
pathlib.Path(sys.argv[1], "model.pkl").write_bytes(b"cos\nsystem\n(S'echo pwned'\ntR.")
PY
if modelward scan "$work/evil-model"; then echo "NOT detected" >&2; exit 1; else echo "(exit $?)"; fi
if modelward push "$work/evil-model" --model evil; then echo "NOT refused" >&2; exit 1; else echo "(push refused, exit $?)"; fi

step "the release gate: roles, policies as code, promotion, rollback"
modelward users add rita --role reviewer
modelward users add rex --role releaser
modelward whoami
MODELWARD_ACTOR=rex modelward promote models:/tiny/1 --to staging --flag temperature=0.2
MODELWARD_ACTOR=rita modelward approve models:/tiny/2 --for staging --comment "looks fine"
MODELWARD_ACTOR=rex modelward promote models:/tiny/2 --to staging --flag temperature=0.3
if MODELWARD_ACTOR=rex modelward promote models:/tiny/2 --to canary; then
  echo "(allowed)"
else
  echo "(denied, exit $?: every failed rule is named above)"
fi
MODELWARD_ACTOR=rex modelward rollback tiny --env staging
modelward releases staging --model tiny
modelward decisions models:/tiny/2
modelward audit verify

step "someone edits a stored blob behind modelward's back → verify and audit say no (exit 1)"
blob=$(find "$MODELWARD_HOME/blobs" -type f -size -200c | head -n 1)
chmod u+w "$blob"; printf 'tampered' >> "$blob"
if modelward verify models:/tiny/1; then echo "NOT detected" >&2; exit 1; else echo "(exit $?)"; fi
if modelward audit verify; then echo "NOT detected" >&2; exit 1; else echo "(exit $?)"; fi
echo
echo "demo finished"
