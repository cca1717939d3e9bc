"""The course folder as the instructor's commands read it: its ``nbgrader_config.py`` and its gradebook."""
from __future__ import annotations

import argparse
import re
from pathlib import Path

from traitlets.config import Config


def gradebook_url(url: str) -> str:
    """A gradebook's SQLAlchemy URL: ``postgres://`` and ``postgresql://`` go through psycopg 3, which the
    course installs (SQLAlchemy's default driver for them is psycopg2)."""
    return re.sub(r"^postgres(ql)?://", "postgresql+psycopg://", url)


def course_config(course: Path) -> Config:
    """``course/nbgrader_config.py``, loaded as nbgrader loads it."""
    from traitlets.config.loader import PyFileConfigLoader

    return PyFileConfigLoader("nbgrader_config.py", path=str(course)).load_config()


def course_folder(parser: argparse.ArgumentParser, folder: str, instead: str = "--course") -> Path:
    """``--course``'s folder, resolved; the command stops with a message where it has no nbgrader_config.py."""
    course = Path(folder).resolve()
    if not (course / "nbgrader_config.py").is_file():
        parser.error(f"no nbgrader_config.py in {course}: run it in the course folder, or pass {instead}")
    return course
