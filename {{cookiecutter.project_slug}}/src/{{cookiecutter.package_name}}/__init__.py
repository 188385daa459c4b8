"""{{ cookiecutter.description }}"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("{{ cookiecutter.project_slug }}")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "{{ cookiecutter.version }}"
