"""The hello-world case (13 bytes of text/plain) for minginx-cffi's native API.

    minginx-cffi serve --app bench.hello_app:app
The same response from the other interfaces is in bench/hello_plain.py.
"""

from minginx_cffi import App

app = App()


@app.route("/hello")
def hello(request):
    return "Hello, world!"
