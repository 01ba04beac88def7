// Outside the Bicep subset checkov (pycep) parses: must be a parsing error.
func double(x int) int => x * 2
output y int = double(2)
