// Preloaded with `node -r` in front of servers that call listen(port) without a host (the
// reference server-everything does `app.listen(PORT)`, i.e. every interface): a listen()
// given a port but no host binds 127.0.0.1 instead. Tests then check the socket's address.
"use strict";
const net = require("node:net");

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  const [first] = args;
  if (typeof first === "number" || (typeof first === "string" && /^\d+$/.test(first))) {
    if (typeof args[1] !== "string") args.splice(1, 0, "127.0.0.1");
  } else if (first && typeof first === "object" && first.path === undefined && !first.host) {
    args[0] = { ...first, host: "127.0.0.1" };
  }
  return listen.apply(this, args);
};
