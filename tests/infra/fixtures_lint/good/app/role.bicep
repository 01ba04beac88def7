param accountName string
param principalId string

resource account 'Microsoft.Batch/batchAccounts@2024-07-01' existing = {
  name: accountName
}

resource role 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, principalId)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '48e5e92e-a480-4e71-aa9c-2778f4c13781')
    principalId: principalId
  }
}
