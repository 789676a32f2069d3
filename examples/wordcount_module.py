"""A student's own job module: count one word in a text file.

    pimq run ./wordcount_module.py corpus.txt --word the
    pimq run ./wordcount_module.py corpus.txt --word the --local   # on the head only
    pimq run ./wordcount_module.py --help

Gives the same number as ``LC_ALL=C grep -ow WORD FILE | wc -l`` for ASCII
text. ``split``, ``params``, ``join`` and ``render`` run on the head as you;
``run`` runs on every Pi inside a sandbox that has the standard library (and
the Pi's Debian python3 packages) but not pimq, no network and no files of
yours: it gets its shard's bytes and the params, and returns JSON.
"""

import re

HELP = "count --word W in FILE (same answer as grep -ow W FILE | wc -l)"
WORD_CHARS = "0-9A-Za-z_"


def add_arguments(parser):
    parser.add_argument("file", help="a text file on the head")
    parser.add_argument("--word", "-w", required=True, help="the word to count")


def params(args):
    if not args.word:
        raise ValueError("--word must not be empty")
    return {"word": args.word}


def split(args, params, shards):
    from pimq.split import split_file  # on the head only: the sandbox has no pimq

    return split_file(args.file, shards)  # cuts at whitespace: no word is cut in two


def run(body, params):
    word = re.escape(params["word"].encode())
    pattern = b"(?<![" + WORD_CHARS.encode() + b"])" + word + b"(?![" + WORD_CHARS.encode() + b"])"
    return len(re.findall(pattern, body))


def join(results, params):
    return sum(results)


def render(result, params):
    return f"{params['word']}: {result}"
