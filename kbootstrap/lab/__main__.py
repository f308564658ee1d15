from kbootstrap.lab.cli import lab

lab()
