# Run the stage files of a `seifer split` / `seifer up` directory one after the other with
# `seifer infer`, each fed its inputs by name: the single-process reference for a pipeline.
#   stages_chain SEIFER DIR VALS   (VALS holds <input>.npy for the model inputs; outputs land there)
stages_safe() { printf '%s' "$1" | tr -c 'A-Za-z0-9._-' '_'; }
stages_chain() {
  local seifer=$1 dir=$2 vals=$3 n s name args
  n=$(jq '.stages | length' "$dir/manifest.json")
  for ((s = 0; s < n; s++)); do
    args=()
    for name in $(jq -r ".stages[$s].inputs[]" "$dir/manifest.json"); do
      args+=(-i "$name=$vals/$(stages_safe "$name").npy")
    done
    "$seifer" infer "$dir/$(jq -r ".stages[$s].file" "$dir/manifest.json")" "${args[@]}" -o "$vals" >/dev/null || return 1
  done
}
