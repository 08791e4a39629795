"""Writers: PNGs with JSON records, PNG grids, HTML pages. All writes are atomic."""

from .writers import OutputDir, html_page, picture_files, save_grid, save_picture, write_json

__all__ = ["OutputDir", "html_page", "picture_files", "save_grid", "save_picture", "write_json"]
