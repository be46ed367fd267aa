// Lodestar's dependencies call Promise.withResolvers, which Node.js only has from version 22.
// Loaded with NODE_OPTIONS=--require on older Node.js; does nothing where it exists.
if (typeof Promise.withResolvers !== "function") {
  Promise.withResolvers = function withResolvers() {
    const out = {};
    out.promise = new this((resolve, reject) => {
      out.resolve = resolve;
      out.reject = reject;
    });
    return out;
  };
}
