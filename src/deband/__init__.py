"""deband: remove banding from images and videos with a learned INDI restorer."""

__version__ = "0.1.0"
__all__ = ["Debander"]


def __getattr__(name: str):
    if name == "Debander":  # imported lazily: the CLI starts without loading torch twice
        from deband.restore.debander import Debander

        return Debander
    raise AttributeError(name)
