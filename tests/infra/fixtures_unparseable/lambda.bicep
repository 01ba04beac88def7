// Outside the Bicep subset checkov (pycep) parses: must be a parsing error.
var xs = map([1, 2], x => x * 2)
