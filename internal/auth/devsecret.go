package auth

// DevSecret is the HS256 secret of dev mode: public, so that a developer's
// tools (notifyctl, the demo app's token endpoint) can sign tokens a
// dev-mode node accepts. It lives here, not with the node, so that those
// tools need not link the server. Never accept it on an exposed node.
const DevSecret = "notify-dev-secret-do-not-use-in-production"
