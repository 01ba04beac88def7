// Outside the Bicep subset checkov (pycep) parses: must be a parsing error.
var a = { x: 1 }
var b = { ...a, y: 2 }
