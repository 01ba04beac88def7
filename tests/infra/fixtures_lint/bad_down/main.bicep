// BAD: role assignments in groups `azd down` could delete.
// expect: down-scope main.bicep: module foreignRole (role.bicep): role assignments in a resource group this template does not create need azure.yaml requiredVersions azd >= 1.24.1
// expect: down-scope main.bicep: module createdFromBatchName (role.bicep): role assignments on pre-existing account
// expect: down-scope main.bicep: module foreignNamedLikeCreated (role.bicep): scoped to a group named like one this template creates
// expect: down-scope main.bicep: module foreignNamedLikeCreated (role.bicep): role assignments in a resource group this template does not create need azure.yaml requiredVersions azd >= 1.24.1
targetScope = 'subscription'

param batchResourceGroupName string
param batchAccountName string

// "Ensuring" the Batch account's group exists makes it one this deployment created.
resource batchRg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: batchResourceGroupName
  location: 'westeurope'
}

module foreignRole 'app/role.bicep' = {
  name: 'foreign-role'
  scope: resourceGroup('other-rg')
  params: {
    accountName: batchAccountName
    principalId: 'p'
  }
}

module createdFromBatchName 'app/role.bicep' = {
  name: 'created-role'
  scope: batchRg
  params: {
    accountName: batchAccountName
    principalId: 'p'
  }
}

module foreignNamedLikeCreated 'app/role.bicep' = {
  name: 'foreign-like-created'
  scope: resourceGroup(batchResourceGroupName)
  params: {
    accountName: batchAccountName
    principalId: 'p'
  }
}
