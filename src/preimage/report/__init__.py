"""The one writer: the keyed store of results, readable copies and summaries (``publish``), results that show
themselves (``result``), PNG grids, HTML pages and the atlas's site. All writes are atomic."""

from .writers import check_folder, html_page, save_grid, write_json

__all__ = ["check_folder", "html_page", "save_grid", "write_json"]
