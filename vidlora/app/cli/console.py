"""Messages on stderr (notes, warnings, the summary) through rich."""

from __future__ import annotations

__all__ = ["Messages", "quiet_libraries"]


class Messages:
    """Lines for the user on stderr; dynamic text is escaped, so a name such as "[tiny]"
    is printed, not read as rich markup."""

    def __init__(self):
        from rich.console import Console

        self._console = Console(stderr=True, highlight=False, soft_wrap=True)

    def print(self, text: str, style: str | None = None) -> None:
        from rich.markup import escape

        self._console.print(escape(text), style=style)

    def note(self, text: str) -> None:
        self.print(f"note: {text}")

    def warn(self, text: str) -> None:
        from rich.markup import escape

        self._console.print(f"[yellow]warning:[/] {escape(text)}")


def quiet_libraries(progress: bool) -> None:
    """Library chatter a command-line user cannot act on: transformers' warnings (e.g. the
    torchvision notice on every image pipeline), and without ``progress`` the loading
    bars of diffusers, transformers and huggingface_hub too. Imports them: call it only
    where the run needs them anyway."""
    import diffusers
    import huggingface_hub
    import transformers

    transformers.logging.set_verbosity_error()
    if not progress:
        diffusers.utils.logging.disable_progress_bar()
        transformers.logging.disable_progress_bar()
        huggingface_hub.utils.disable_progress_bars()
