// GOOD: ranges inside the platform's, a role in a foreign group with azd >= 1.24.1,
// and a role in the created group on a resource this deployment created.
// expect: (none)
targetScope = 'subscription'

@minValue(40)
@maxValue(500)
param maxInstances int = 100

param batchResourceGroupName string
param batchAccountName string

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-app'
  location: 'westeurope'
}

module site 'app/site.bicep' = {
  name: 'site'
  scope: rg
  params: {
    maximumInstanceCount: maxInstances
  }
}

module foreignRole 'app/role.bicep' = {
  name: 'foreign-role'
  scope: resourceGroup(batchResourceGroupName)
  params: {
    accountName: batchAccountName
    principalId: 'p'
  }
}

module ownRole 'app/role.bicep' = {
  name: 'own-role'
  scope: rg
  params: {
    accountName: site.outputs.name
    principalId: 'p'
  }
}
