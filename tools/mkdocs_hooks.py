"""MkDocs hooks for the docs site (mkdocs.yml ``hooks:``); nothing here is imported by the package.

- ``<!-- model registry -->`` in a page becomes a table of every named constructor, written
  from :data:`keras_resnet.specs.MODELS` (the rows the constructors are made from), so the
  table cannot drift from the code and the build needs no Keras or TensorFlow.
- The docstrings use reST roles (``:func:`x```); Markdown renders them as ``:func:`` before
  the code span. The role prefix is dropped from the rendered HTML.
"""

import os
import re
import sys

MARKER = "<!-- model registry -->"
ROLE = re.compile(r":(?:py:)?(?:func|mod|class|data|meth|attr|exc|obj|const):(<code>)~?")


def on_config(config, **kwargs):
    # the registry table reads this repository's keras_resnet, also under `mkdocs serve`
    root = os.path.dirname(os.path.abspath(config.config_file_path))
    if root not in sys.path:
        sys.path.insert(0, root)
    return config


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
    if MARKER in markdown:
        markdown = markdown.replace(MARKER, _registry_table())
    return markdown


def on_page_content(html, **kwargs):
    return ROLE.sub(r"\1", html)
