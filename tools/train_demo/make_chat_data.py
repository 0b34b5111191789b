#!/usr/bin/env python3
"""Builds the chat-format phase data of the demo model from the corpus, rendered with the
real Nemotron 3 chat template (data/chat_templates/nemotron3-nano-30b-a3b.chat_template.jinja).

Three kinds of single-turn conversations, extracted from a corpus split with fixed rules:
  * definitions: GCIDE entries ("Word \\Pron\\, n.\\n   text...") -> "What does "word" mean?"
  * Python functions: top-level functions and methods (`def name(args):`, self dropped) with a docstring (4-30 lines) ->
    "Write a Python function `name(args)` that <docstring summary>"
  * quotations: fortune paragraphs ending with a "\\t\\t-- Author" line -> "Give me a quote."
Half of the conversations use thinking mode (a short templated reasoning inside
<think>...</think>), half have it off (empty <think></think>), as the template renders them.

Each output line is JSON {"kind", "prompt", "completion"}: `prompt` = the template rendered up
to the generation prompt (what the server feeds the model), `completion` = the rest of the
rendered conversation up to and including <|im_end|>. Training tokenizes the two separately,
as the server does, and puts the loss on the completion only.

Usage: python3 tools/train_demo/make_chat_data.py --corpus CORPUS --split train --out FILE [--seed 0]
"""
import argparse
import json
import os
import random
import re
import textwrap

import jinja2

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEMPLATE = os.path.join(ROOT, "data", "chat_templates", "nemotron3-nano-30b-a3b.chat_template.jinja")
POS = {"n.": "noun", "v. t.": "transitive verb", "v. i.": "intransitive verb", "a.": "adjective",
       "adv.": "adverb", "prep.": "preposition", "interj.": "interjection", "pron.": "pronoun",
       "conj.": "conjunction", "p. p.": "past participle", "p. a.": "participial adjective"}
DEFINE_Q = ['What does "{w}" mean?', "Define {w}.", 'What is the meaning of the word "{w}"?',
            "What is {a} {w}?", 'Give me a definition of "{w}".']
CODE_Q = ["Write a Python function `{sig}` that {doc}", "Implement `{sig}` in Python: {doc}",
          "Show me Python code for `{sig}`. It should {doc}"]
QUOTE_Q = ["Give me a quote.", "Tell me a famous quotation.", "Quote someone for me.",
           "Share a quote with its author."]
MARKERS = re.compile(r"\[(?:1913 Webster|PJC|WordNet 1\.5|Webster 1913 Suppl\.|[A-Z][A-Za-z. 0-9]*)\]")


def definitions(text):
    pat = re.compile(r"(?m)^([A-Z][A-Za-z'\- ]{1,30}) \\[^\\\n]*\\, ([a-z][a-z. &]*?)(?: \([A-Z][a-z.]+\))?\n"
                     r"((?:   .*\n)+)")
    for m in pat.finditer(text):
        word, pos, body = m.group(1), m.group(2).strip(), m.group(3)
        if pos not in POS:
            continue
        sense = re.split(r"\n\s*\n", body)[0]
        sense = MARKERS.sub("", sense)
        sense = re.sub(r"^\s*1\.\s*", "", sense)
        sense = " ".join(sense.split()).split(" --")[0].strip()
        sense = sense.replace("{", "").replace("}", "")
        if not 12 <= len(sense) <= 400 or "--" in sense[:5]:
            continue
        yield word, POS[pos], sense


def functions(text):
    pat = re.compile(r'(?m)^( {0,4})def (\w+)\(([^)\n]*)\):\n\1    r?"""(.*?)(?:"""|\n)')
    for m in pat.finditer(text):
        indent, name, args, doc = m.group(1), m.group(2), m.group(3), m.group(4).strip()
        if name.startswith("_") or not doc or len(doc) > 160:
            continue
        args = ", ".join(a.strip() for a in args.split(",") if a.strip() not in ("self", "cls", ""))
        end = re.compile(r"(?m)^ {0,%d}\S" % len(indent)).search(text, m.end())
        src = textwrap.dedent(text[m.start():end.start() if end else len(text)]).rstrip()
        lines = src.count("\n") + 1
        if not 4 <= lines <= 30 or len(src) > 1500:
            continue
        doc = doc.rstrip(".").rstrip()
        doc = doc[0].lower() + doc[1:] + "."
        yield name, args, doc, src


def quotes(text):
    for para in text.split("\n\n"):
        lines = para.strip("\n").split("\n")
        if 2 <= len(lines) <= 6 and lines[-1].startswith("\t\t-- ") and len(para) <= 500:
            body = " ".join(" ".join(lines[:-1]).split())
            author = lines[-1].strip()[3:].strip()
            if body and author:
                yield body, author


def render(template, user, answer, reasoning, thinking):
    prompt = template.render(messages=[{"role": "user", "content": user}], add_generation_prompt=True,
                             enable_thinking=thinking)
    msg = {"role": "assistant", "content": answer}
    if thinking:
        msg["reasoning_content"] = reasoning
    full = template.render(messages=[{"role": "user", "content": user}, msg], add_generation_prompt=False,
                           enable_thinking=thinking)
    if not full.startswith(prompt):
        raise RuntimeError("template: the conversation does not extend the generation prompt")
    completion = full[len(prompt):]
    end = completion.rindex("<|im_end|>") + len("<|im_end|>")
    return prompt, completion[:end]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--split", default="train")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--per-kind", type=int, default=20000)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    template = env.from_string(open(TEMPLATE, encoding="utf-8").read())
    prose = open(os.path.join(args.corpus, f"{args.split}.prose.txt"), encoding="utf-8").read()
    code = open(os.path.join(args.corpus, f"{args.split}.code.txt"), encoding="utf-8").read()
    rows = {"definition": [], "function": [], "quote": []}
    for word, pos, sense in definitions(prose):
        w = word.lower() if not word.isupper() else word
        q = rng.choice(DEFINE_Q).format(w=w, a="an" if w[0] in "aeiou" else "a")
        answer = f"**{word}** ({pos}): {sense}"
        reasoning = f'The user asks what "{w}" means. It is a {pos}; I will give its dictionary definition.'
        rows["definition"].append((q, answer, reasoning))
    for name, fargs, doc, src in functions(code):
        q = rng.choice(CODE_Q).format(sig=f"{name}({fargs})", doc=doc)
        answer = f"```python\n{src}\n```"
        reasoning = f"The user wants a Python function named {name}. I will write it with a docstring."
        rows["function"].append((q, answer, reasoning))
    for body, author in quotes(prose):
        answer = f'"{body}"\n\n-- {author}'
        reasoning = "The user asks for a quotation. I will share one and name its author."
        rows["quote"].append((rng.choice(QUOTE_Q), answer, reasoning))
    counts = {}
    with open(args.out, "w", encoding="utf-8") as f:
        for kind, items in rows.items():
            rng.shuffle(items)
            items = items[:args.per_kind]
            counts[kind] = len(items)
            for q, answer, reasoning in items:
                thinking = rng.random() < 0.5
                prompt, completion = render(template, q, answer, reasoning, thinking)
                f.write(json.dumps({"kind": kind, "prompt": prompt, "completion": completion},
                                   ensure_ascii=False) + "\n")
    print(f"wrote {args.out}: {counts}")


if __name__ == "__main__":
    main()
