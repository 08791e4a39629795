"""Writers: PNGs with JSON records, PNG grids, HTML pages. All writes are atomic."""

from .writers import OutputDir, html_page, save_grid, write_json

__all__ = ["OutputDir", "html_page", "save_grid", "write_json"]
