from technicia_deploy.cli import run

run()
