import nbformat
def build(cells, path):
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
                   "language_info": {"name": "python"}}
    out = []
    for c in cells:
        kind, src = c[0], c[1].strip("\n")
        meta = c[2] if len(c) > 2 else {}
        cell = nbformat.v4.new_markdown_cell(src) if kind == "md" else nbformat.v4.new_code_cell(src)
        cell.metadata = meta
        out.append(cell)
    nb.cells = out
    nbformat.write(nb, path)
