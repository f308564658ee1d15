from .cli import lab

lab()
