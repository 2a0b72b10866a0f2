"""MkDocs hooks for the docs site (mkdocs.yml ``hooks:``); nothing here is imported by the package.

- ``<!-- model registry -->`` in a page becomes a table of every named constructor, written
  from :data:`keras_resnet.specs.MODELS` (the rows the constructors are made from), so the
  table cannot drift from the code and the build needs no Keras or TensorFlow.
- ``<!-- include: PATH -->`` becomes the file at PATH (from the repository's root), so
  BENCHMARKS.md is a page of the site without a copy. It is written for GitHub, where a
  list may follow a paragraph line directly; Python-Markdown needs a blank line there, which
  is added.
- The docstrings use reST roles (``:func:`x```); Markdown renders them as ``:func:`` before
  the code span. The role prefix is dropped from the rendered HTML.
"""

import os
import re
import sys

MARKER = "<!-- model registry -->"
INCLUDE = re.compile(r"<!-- include: (\S+) -->")
LIST_ITEM = re.compile(r"(?:[-*+]|\d+\.) ")
ROLE = re.compile(r":(?:py:)?(?:func|mod|class|data|meth|attr|exc|obj|const):(<code>)~?")


_root = None


def on_config(config, **kwargs):
    # the registry table reads this repository's keras_resnet, also under `mkdocs serve`
    global _root
    _root = os.path.dirname(os.path.abspath(config.config_file_path))
    if _root not in sys.path:
        sys.path.insert(0, _root)
    return config


def _blank_line_before_lists(markdown):
    lines, fenced, previous = [], False, ""
    for line in markdown.split("\n"):
        if line.startswith("```"):
            fenced = not fenced
        if (not fenced and LIST_ITEM.match(line) and previous.strip()
                and not previous[0].isspace() and not LIST_ITEM.match(previous)):
            lines.append("")
        lines.append(line)
        previous = line
    return "\n".join(lines)


def _include(match):
    with open(os.path.join(_root, match.group(1)), encoding="utf-8") as f:
        return _blank_line_before_lists(f.read())


def _registry_table():
    from keras_resnet import specs

    rows = ["| constructor | built as | default `weights` | input side | `preprocess_input` mode | description |",
            "| --- | --- | --- | ---: | --- | --- |"]
    for spec in specs.MODELS.values():
        builder = "CifarResNet" if spec.family == "cifar" else "ResNet"
        options = "".join(f", {key}={value!r}" for key, value in spec.options.items())
        weights = '`"imagenet"`' if spec.keras_applications else "`None`"
        rows.append(f"| `{spec.name}` | `{builder}({spec.depth}, variant={spec.variant!r}{options})` | "
                    f"{weights} | {spec.input_size} | `{spec.preprocessing}` | {spec.description} |")
    return "\n".join(rows)


def on_page_markdown(markdown, **kwargs):
    markdown = INCLUDE.sub(_include, markdown)
    if MARKER in markdown:
        markdown = markdown.replace(MARKER, _registry_table())
    return markdown


def on_page_content(html, **kwargs):
    return ROLE.sub(r"\1", html)
