from pagemill.cli import app

app(prog_name="pagemill")
