"""OAuth social-login gateway: sign in with Google, Facebook, X or GitHub; get a signed JWT."""

__version__ = "0.1.0"
