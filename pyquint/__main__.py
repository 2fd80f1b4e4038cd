"""``python -m pyquint``: the same as the ``pyquint`` command."""

from .cli import main

if __name__ == "__main__":
    main()
