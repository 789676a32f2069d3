#!/usr/bin/env bash
# make demo: on the provisioned simulated classroom, a student logs in to the
# head node over SSH and runs the classic word count on a 45 MB corpus (40
# copies of tinyshakespeare); the answer is checked against grep.
set -euo pipefail
cd "$(dirname "$0")/../.."
say() { printf '\033[1m[demo]\033[0m %s\n' "$*" >&2; }
key=.classroom/${PIMQ_CLASSROOM:-pimq}/id_ed25519
head=$(awk '/^    head:/{h=1} h && /ansible_host:/{print $2; exit}' "${PIMQ_INVENTORY:-inventory/local}/hosts.yml")
known_hosts=${PIMQ_INVENTORY:-inventory/local}/known_hosts
ssh_student() { ssh -i "$key" -o StrictHostKeyChecking=yes -o "UserKnownHostsFile=$known_hosts" -o LogLevel=ERROR "$@"; }
# The repository's sample corpus (data/README.md); PIMQ_DEMO_DATA counts in another text.
data=${PIMQ_DEMO_DATA:-data/tinyshakespeare.txt}
[ -f "$data" ] || { echo "no $data: restore it (git checkout -- data/) or set PIMQ_DEMO_DATA to a text file" >&2; exit 2; }

if [ -z "${PIMQ_DEMO_DATA:-}" ]; then
  say "alice logs in to the head node ($head) and makes the 45 MB corpus: pimq sample shakespeare --copies 40 > corpus.txt"
  ssh_student "alice@$head" 'pimq sample shakespeare --copies 40 > corpus.txt && ls -l corpus.txt'
else
  say "alice logs in to the head node ($head) and copies up the 45 MB corpus (40 x $data)"
  for _ in $(seq 40); do cat "$data"; done | ssh_student "alice@$head" 'cat > corpus.txt && ls -l corpus.txt'
fi
expected=$(for _ in $(seq 40); do cat "$data"; done | LC_ALL=C.UTF-8 grep -ow more | wc -l)
say "alice runs: pimq run wordcount --word more corpus.txt   (grep -ow says: $expected)"
out=$(ssh_student -t "alice@$head" 'pimq run wordcount --word more corpus.txt' | tee /dev/stderr)
grep -q "occurs $expected times" <<<"$out" || { say "pimq's answer is not grep's ($expected)"; exit 1; }
say "pimq and grep agree: $expected"
say "alice puts the corpus on every Pi once: pimq data put corpus.txt"
ssh_student "alice@$head" 'pimq data put corpus.txt'
say "alice runs it again: the shards carry byte ranges only, each Pi reads its own copy"
out=$(ssh_student -t "alice@$head" 'pimq run wordcount --word more corpus.txt' | tee /dev/stderr)
grep -q "occurs $expected times" <<<"$out" || { say "pimq's answer is not grep's ($expected)"; exit 1; }
say "alice measures it: pimq experiment wordcount --word more corpus.txt --upto 3 (1, 2, 3 Pis against one process on the head)"
ssh_student "alice@$head" 'pimq experiment wordcount --word more corpus.txt --upto 3 --repeats 2'
inventory=${PIMQ_INVENTORY:-inventory/local}
say "the teacher's page: https://$head:8443/ (log in as pimq-admin, password in $inventory/credentials/admin.txt; the room CA for the browser: $inventory/credentials/tls/ca.crt.txt); alice's jobs above are listed there"
