"""Worker processes started by injectors. They import only the standard library."""
