"""OAuth social-login gateway: sign in with Google, Facebook or X; get a signed JWT."""

__version__ = "0.1.0"
