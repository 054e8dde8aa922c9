"""The demo served by ``twistd -n sio`` when no ``--app`` is given: a small chat page
(``index.html``, ``demo.css``, ``demo.js``) and its handlers (:func:`txsio.demo.app.setup`)."""
