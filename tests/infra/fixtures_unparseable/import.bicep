// Outside the Bicep subset checkov (pycep) parses: must be a parsing error.
import { foo } from 'other.bicep'
param p string
