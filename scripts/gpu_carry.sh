#!/usr/bin/env bash
# Fills .gpu/ (in .gitignore) with what scripts/gpu_session.py needs on a lent GPU machine that has PyTorch but no
# Bible sources and no network. Run after ./scripts/setup.sh and `bench mine-negatives --out build/negatives.trec`.
# The device tool carries at most 64 MiB, working tree included; the committed models/ (69 MB) alone exceed it. For
# the call, take them out of the index and the tree's view (`git rm -r -q --cached models` and a "/models/" line in
# .git/info/exclude), call `run` with carry [".gpu"] (59 MB), then put them back (`git reset -q -- models`
# and drop the line). The corpus cache is keyed by corpus/bible.py's hash: run this again after that file changes.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
home=${VERSEBENCH_HOME:-$HOME/.cache/versebench}
sword=${SWORD_PATH:-/usr/share/sword}
minilm=$(.venv/bin/python -c "from encoder.hf import minilm_dir; print(minilm_dir())")
rm -rf .gpu && mkdir -p .gpu/minilm .gpu/pysword_src
for t in web kjv asv ylt dar; do  # the corpus cache travels: build it first (bench corpus build -t all)
  [ -f "$home/corpus/$t.tsv" ] || { echo "no corpus cache for $t in $home: run bench corpus build -t all" >&2; exit 1; }
done
(cd "$home" && tar cJf "$here/.gpu/home.tar.xz" corpus encoder)
(cd "$sword" && tar cJf "$here/.gpu/sword.tar.xz" mods.d modules/comments modules/lexdict)
for f in config.json tokenizer.json vocab.txt tokenizer_config.json special_tokens_map.json; do
  cp "$minilm/$f" .gpu/minilm/
done
# float16: MiniLM's 87 MiB of float32 weights would not fit the transfer; the fine-tunes start from this copy
.venv/bin/python - "$minilm/model.safetensors" .gpu/minilm/model.safetensors <<'PY'
import sys
from safetensors.torch import load_file, save_file
save_file({k: v.half().contiguous() for k, v in load_file(sys.argv[1]).items()}, sys.argv[2], metadata={"format": "pt"})
PY
pysword=$(.venv/bin/python -c "import pysword, os; print(os.path.dirname(pysword.__file__))")
cp -r "$pysword" .gpu/pysword_src/ && rm -rf .gpu/pysword_src/pysword/__pycache__
xz -9 -T2 -kc build/negatives.trec > .gpu/negatives.trec.xz
du -sh .gpu
