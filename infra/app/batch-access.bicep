// Role on the EXISTING Batch account, deployed into the account's own resource group
// (main.bicep scopes this module with resourceGroup(subscriptionId, resourceGroupName)
// taken from the account's resource id, so another subscription works too).
//
//   Azure Batch Job Submitter (48e5e92e-...)   data actions on jobs: enough to PATCH
//                                               a job that runs on an existing pool.
//   Azure Batch Data Contributor (6aaa78f1-...) jobs AND pools: only when updates may
//                                               set an auto-pool specification
//                                               (allowAutoPoolUpdates = true).
// Owner/Contributor carry no Batch data actions, so one of the two is required.
//
// Switching allowAutoPoolUpdates creates the other assignment (its name includes the
// role id) and leaves the previous one in place: remove it by hand (docs/deploy.md).

@description('Name of the existing Batch account (in this module\'s resource group).')
param batchAccountName string

@description('Object (principal) id that receives the role.')
param principalId string

@description('Kind of principal.')
@allowed([
  'ServicePrincipal'
  'User'
  'Group'
])
param principalType string = 'ServicePrincipal'

@description('Grant Azure Batch Data Contributor (jobs + pools) instead of Azure Batch Job Submitter (jobs).')
param allowAutoPoolUpdates bool = false

resource batchAccount 'Microsoft.Batch/batchAccounts@2024-07-01' existing = {
  name: batchAccountName
}

resource batchRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(batchAccount.id, principalId, allowAutoPoolUpdates ? '6aaa78f1-f7de-44ca-8722-c64a23943cae' : '48e5e92e-a480-4e71-aa9c-2778f4c13781')
  scope: batchAccount
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', allowAutoPoolUpdates ? '6aaa78f1-f7de-44ca-8722-c64a23943cae' : '48e5e92e-a480-4e71-aa9c-2778f4c13781')
    principalId: principalId
    principalType: principalType
  }
}

// `acct.region.batch.azure.com` (no scheme) -> the origin the function may call.
output accountEndpoint string = 'https://${batchAccount.properties.accountEndpoint}'
output accountId string = batchAccount.id

// Preconditions the postprovision hook checks (a PATCH fails with 401/403 otherwise).
// ARM's if() evaluates only the branch taken (nested, not &&, which evaluates both
// sides), so an absent property reads as its default instead of failing.
var accountProperties = batchAccount.properties
@description('Data-plane authentication modes; must include AAD. Empty: not reported.')
output allowedAuthenticationModes array = contains(accountProperties, 'allowedAuthenticationModes') ? accountProperties.allowedAuthenticationModes : []
@description('Enabled (default), Disabled or SecuredByPerimeter.')
output publicNetworkAccess string = contains(accountProperties, 'publicNetworkAccess') ? accountProperties.publicNetworkAccess : 'Enabled'
@description('Allow or Deny for the account endpoint; Deny admits only listed IP ranges.')
output accountAccessDefaultAction string = contains(accountProperties, 'networkProfile') ? (contains(accountProperties.networkProfile, 'accountAccess') ? accountProperties.networkProfile.accountAccess.defaultAction : 'Allow') : 'Allow'
