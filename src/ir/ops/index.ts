/** Registers every op; import this module once before using the registry. */
import "./elementwise.js";
import "./linear.js";
import "./norm.js";
import "./shape.js";
import "./attention.js";
import "./moe.js";
import "./placement.js";
import "./quant.js";
