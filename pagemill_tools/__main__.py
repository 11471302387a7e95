from pagemill_tools.cli import app

app(prog_name="pagemill")
