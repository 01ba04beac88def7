// Outside the Bicep subset checkov (pycep) parses: must be a parsing error.
type settings = {
  name: string
}
param s settings
